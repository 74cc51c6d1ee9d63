//! The sections only some tasks (or `train bench`) read: `[audio]`, `[forecast]`,
//! `[translate]`, `[summarize]` and `[bench]`. Each is left out of a resolved config when it is all defaults,
//! and refused on a task that does not read it (see `validate`).

use model::seq2seq::{AttentionKind, DecodeOptions};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The `[audio]` section (`task = "audio"`): how the recordings in `data.dir` are split and
/// turned into feature frames. Documented in `configs/fsdd.toml`; `sample_rate` and `stereo`
/// (corpus "audio" only) in README.md, "Your own audio clips".
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
    /// corpus "audio": every clip is resampled to this rate in Hz. Unset: the first training
    /// clip's rate. Left out of a resolved config when unset, so FSDD configs read as before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<u32>,
    /// corpus "audio": clips with more than one channel, "refuse" | "downmix" (average them).
    #[serde(skip_serializing_if = "is_refuse")]
    pub stereo: data::audio::an4::Stereo,
}

fn is_refuse(s: &data::audio::an4::Stereo) -> bool {
    *s == data::audio::an4::Stereo::Refuse
}

impl Default for AudioConfig {
    fn default() -> Self {
        Self {
            split: data::audio::FsddSplit::Official,
            val_fraction: 0.1,
            normalization: data::audio::Normalization::TrainSet,
            mfcc: data::audio::MfccConfig::default(),
            sample_rate: None,
            stereo: data::audio::an4::Stereo::Refuse,
        }
    }
}

impl AudioConfig {
    /// Whether every key has its default (the section is then left out of `config.toml`).
    pub fn is_default(&self) -> bool {
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

    /// The front end of a `corpus = "audio"` run.
    pub fn clips(&self) -> data::audio::ClipFrontEnd {
        data::audio::ClipFrontEnd {
            sample_rate: self.sample_rate,
            stereo: self.stereo,
            mfcc: self.mfcc.clone(),
            normalization: self.normalization,
        }
    }
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
    /// Whether every key has its default (the section is then left out of `config.toml`).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// The `[translate]` section (`task = "translate"`). Documented in `configs/multi30k_de_en.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TranslateConfig {
    /// Score function: "bahdanau" | "dot" | "general".
    pub attention: AttentionKind,
    /// Feed h̃_{t−1} to the decoder with the next embedding.
    pub input_feeding: bool,
    /// Generator weights = target embedding table.
    pub tie_embeddings: bool,
    /// ε of the label-smoothed cross-entropy.
    pub label_smoothing: f64,
    /// Beam size for the test split and `train translate` (1 = greedy).
    pub beam: usize,
    /// Beam size for the per-epoch validation BLEU (1 = greedy, the fast choice).
    pub valid_beam: usize,
    /// GNMT length-penalty α.
    pub length_penalty: f64,
    /// Output length limit: ⌈ratio · source tokens⌉ + `max_len_extra`.
    pub max_len_ratio: f64,
    /// See `max_len_ratio`.
    pub max_len_extra: usize,
    /// Dropout on the attentional hidden state h̃.
    pub output_dropout: f64,
}

impl Default for TranslateConfig {
    fn default() -> Self {
        Self {
            attention: AttentionKind::General,
            input_feeding: true,
            tie_embeddings: false,
            label_smoothing: 0.1,
            beam: 5,
            valid_beam: 1,
            length_penalty: 0.6,
            max_len_ratio: 1.5,
            max_len_extra: 5,
            output_dropout: 0.0,
        }
    }
}

impl TranslateConfig {
    /// Whether every key has its default (the section is then left out of `config.toml`).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// The decoder's search settings with beam size `beam`.
    pub fn decode_options(&self, beam: usize) -> DecodeOptions {
        DecodeOptions {
            beam,
            length_penalty: self.length_penalty,
            max_len_ratio: self.max_len_ratio,
            max_len_extra: self.max_len_extra,
        }
    }
}

/// What happens to a document longer than `summarize.max_source_len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LongSource {
    /// Keep its first `max_source_len` tokens and say so (a count while training, a warning
    /// on stderr for `train summarize`).
    #[default]
    Truncate,
    /// Refuse it with an error naming the document and the limit.
    Refuse,
}

/// The `[summarize]` section (`task = "summarize"`). Documented in `configs/gigaword.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SummarizeConfig {
    /// Score function: "bahdanau" | "dot" | "general".
    pub attention: AttentionKind,
    /// Feed h̃_{t−1} to the decoder with the next embedding.
    pub input_feeding: bool,
    /// Generator weights = target embedding table.
    pub tie_embeddings: bool,
    /// Dropout on the attentional hidden state h̃.
    pub output_dropout: f64,
    /// Pointer-generator copying from the source (See et al. 2017).
    pub copy: bool,
    /// Coverage vector fed to the attention, and the coverage loss.
    pub coverage: bool,
    /// λ of the coverage loss Σ_t Σ_s min(a_t,s, c_t,s) (per target token, like the NLL).
    pub coverage_weight: f64,
    /// First epoch (1-based) with coverage on; before it the coverage vector is zero and the
    /// coverage loss off (See et al. switch it on for the last part of training).
    pub coverage_from_epoch: usize,
    /// Document tokens kept (longer ones: `long_source`).
    pub max_source_len: usize,
    /// "truncate" | "refuse".
    pub long_source: LongSource,
    /// Training summaries are cut to this many tokens.
    pub max_target_len: usize,
    /// Beam size for the test split and `train summarize` (1 = greedy).
    pub beam: usize,
    /// Beam size for the per-epoch validation ROUGE.
    pub valid_beam: usize,
    /// Validation documents decoded for ROUGE each epoch (0 = all); the loss uses them all.
    pub valid_rouge_examples: usize,
    /// Fewest words before EOS.
    pub min_len: usize,
    /// Most words of a summary.
    pub max_len: usize,
    /// GNMT length penalty α.
    pub length_penalty: f64,
    /// Block repeating any n-gram of this size in one summary (0 = off).
    pub no_repeat_ngram: usize,
}

impl Default for SummarizeConfig {
    fn default() -> Self {
        Self {
            attention: AttentionKind::Bahdanau,
            input_feeding: true,
            tie_embeddings: false,
            output_dropout: 0.0,
            copy: true,
            coverage: false,
            coverage_weight: 1.0,
            coverage_from_epoch: 1,
            max_source_len: 100,
            long_source: LongSource::Truncate,
            max_target_len: 30,
            beam: 4,
            valid_beam: 1,
            valid_rouge_examples: 1000,
            min_len: 1,
            max_len: 30,
            length_penalty: 0.6,
            no_repeat_ngram: 0,
        }
    }
}

impl SummarizeConfig {
    /// Whether every key has its default (the section is then left out of `config.toml`).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Whether coverage is on in (1-based) `epoch`.
    pub fn coverage_on(&self, epoch: usize) -> bool {
        self.coverage && epoch >= self.coverage_from_epoch
    }
}

/// The `[bench]` section (`train bench` only; see configs/bench_a.toml).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BenchConfig {
    /// Timed steps per path (training and inference each), after `warmup`.
    pub steps: usize,
    /// Untimed steps first (allocator, caches, thread start-up).
    pub warmup: usize,
    /// Timed steps for the slow paths (`ops`, `candle_nn`); at most `steps`.
    pub slow_steps: usize,
    /// Tokens per sequence (every row full length).
    pub seq_len: usize,
    /// Vocabulary size of the embedding table (ids drawn uniformly).
    pub vocab: usize,
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self { steps: 20, warmup: 3, slow_steps: 20, seq_len: 64, vocab: 16000 }
    }
}

impl BenchConfig {
    /// Whether every key has its default (the section is then left out of `config.toml`).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// The `[tag]` section (`task = "tag"`): how a token-and-tag corpus is read (files from
/// `data.dir` with `data.train_file`, `validation_file`, `test_file`), the tag scheme, and
/// the sequence labeller's character features and output layer. Documented in
/// `configs/ud_ewt_pos.toml` and `configs/conll2003_ner.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TagConfig {
    /// File format: "conllu" | "conll" | "jsonl".
    pub format: data::conll::TagFormat,
    /// Where the tag is: "upos" | "xpos" (conllu), "last" or a 0-based column (conll), the
    /// tags field (jsonl). Default: "upos", "last", "tags".
    pub column: Option<String>,
    /// The files' tag scheme: "none" (plain labels) | "iob1" | "iob2" | "bioes".
    pub tag_scheme: data::tag_scheme::TagScheme,
    /// The scheme the model learns and writes: "none" | "iob2" | "bioes" (entity schemes
    /// convert; default: "bioes" for entity input, "none" otherwise).
    pub target_scheme: Option<data::tag_scheme::TagScheme>,
    /// The CRF output layer; false = an independent softmax per token (the ablation).
    pub crf: bool,
    /// Forbid the transitions the target scheme rules out (no `I-PER` after `O`) in the CRF.
    pub constraints: bool,
    /// Character features per word: "lstm" | "cnn" | "none".
    pub chars: String,
    /// Character embedding width.
    pub char_dim: usize,
    /// Char BiLSTM hidden size per direction, or the char CNN's filters.
    pub char_hidden: usize,
    /// Char CNN kernel width.
    pub char_width: usize,
    /// Characters kept per word (longer words are cut).
    pub max_word_len: usize,
    /// Look words up lowercased (the characters keep their case).
    pub lowercase: bool,
    /// Look words up with every digit replaced by 0.
    pub digits_to_zero: bool,
    /// Training words seen fewer times than this are left out of the vocabulary.
    pub min_count: usize,
    /// Probability of replacing a word seen once in training by the unknown word at each
    /// training step (Lample et al. 2016), so the unknown word's embedding is trained.
    pub singleton_unk: f64,
}

impl Default for TagConfig {
    fn default() -> Self {
        Self {
            format: data::conll::TagFormat::Conllu,
            column: None,
            tag_scheme: data::tag_scheme::TagScheme::None,
            target_scheme: None,
            crf: true,
            constraints: true,
            chars: "lstm".into(),
            char_dim: 25,
            char_hidden: 25,
            char_width: 3,
            max_word_len: 30,
            lowercase: true,
            digits_to_zero: true,
            min_count: 1,
            singleton_unk: 0.5,
        }
    }
}

impl TagConfig {
    /// Whether every key has its default (the section is then left out of `config.toml`).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// The scheme the model learns: `target_scheme`, or its default.
    pub fn target(&self) -> data::tag_scheme::TagScheme {
        use data::tag_scheme::TagScheme;
        self.target_scheme.unwrap_or(if self.tag_scheme == TagScheme::None {
            TagScheme::None
        } else {
            TagScheme::Bioes
        })
    }
}

/// Which n-gram language model `[transcribe]` fuses into beam search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LmKind {
    /// No language model.
    #[default]
    None,
    /// A character n-gram estimated from the training transcripts.
    Char,
    /// A word n-gram estimated from the training transcripts.
    Word,
}

/// Feature normalisation of `[transcribe]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SpeechNorm {
    /// Each recording by its own mean and standard deviation per band.
    #[default]
    Utterance,
    /// Each speaker's recordings by that speaker's statistics (files given to `transcribe`
    /// count as one speaker each).
    Speaker,
    /// Statistics over every training frame, stored in the run (`speech_normalizer.json`).
    TrainSet,
    /// The log-mel energies as they are.
    None,
}

/// The `[transcribe]` section (`task = "transcribe"`): manifests, front end, augmentation,
/// subsampling, loss and decoding. Documented in `configs/an4.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TranscribeConfig {
    /// Folder of the JSON Lines manifests (paths inside are relative to it).
    pub dir: PathBuf,
    /// Training manifest, in `dir`.
    pub train: String,
    /// Validation manifest (checkpoint selection, early stopping).
    pub validation: String,
    /// Test manifest.
    pub test: String,
    /// The model's sample rate; recordings at other rates are resampled.
    pub sample_rate: u32,
    /// Recordings with more than one channel: "refuse" | "downmix".
    pub stereo: data::audio::an4::Stereo,
    /// Longest recording accepted, in seconds.
    pub max_seconds: f64,
    /// "utterance" | "speaker" | "train_set" | "none".
    pub normalization: SpeechNorm,
    /// The log-mel front end (`[transcribe.features]`).
    pub features: data::audio::logmel::LogMelConfig,
    /// Apply SpecAugment's masks to training batches.
    pub spec_augment: bool,
    /// The masks (`[transcribe.augment]`).
    pub augment: data::audio::logmel::SpecAugment,
    /// Frames stacked into one recurrent step (time subsampling).
    pub stack: usize,
    /// Dropout on the stacked input frames.
    pub input_dropout: f64,
    /// "mean" (each loss over its target length, then the batch mean) | "sum".
    pub reduction: model::ctc::Reduction,
    /// Infeasible utterances contribute zero loss instead of infinity.
    pub zero_infinity: bool,
    /// Beam width for the test split, `predict` and `transcribe` (1 = greedy).
    pub beam: usize,
    /// Beam width for the per-epoch validation (1 = greedy).
    pub valid_beam: usize,
    /// Language model for beam search: "none" | "char" | "word".
    pub lm: LmKind,
    /// The language model's order.
    pub lm_order: usize,
    /// Weight of its log-probability.
    pub lm_weight: f64,
    /// Added per word of a hypothesis.
    pub word_bonus: f64,
    /// Utterances per evaluation batch.
    pub eval_batch_size: usize,
}

impl Default for TranscribeConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("../shared/data/an4"),
            train: "train_nodev.jsonl".into(),
            validation: "dev.jsonl".into(),
            test: "test.jsonl".into(),
            sample_rate: 16_000,
            stereo: data::audio::an4::Stereo::Refuse,
            max_seconds: 60.0,
            normalization: SpeechNorm::Utterance,
            features: data::audio::logmel::LogMelConfig::default(),
            spec_augment: true,
            augment: data::audio::logmel::SpecAugment::default(),
            stack: 4,
            input_dropout: 0.0,
            reduction: model::ctc::Reduction::Mean,
            zero_infinity: true,
            beam: 8,
            valid_beam: 1,
            lm: LmKind::None,
            lm_order: 3,
            lm_weight: 0.0,
            word_bonus: 0.0,
            eval_batch_size: 32,
        }
    }
}

impl TranscribeConfig {
    /// Whether every key has its default (the section is then left out of `config.toml`).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}
