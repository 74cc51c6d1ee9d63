//! Range and consistency checks of a deserialised config, run at load time so that a bad
//! value fails before any data is read, with the dotted key it came from.

use super::{AudioConfig, BenchConfig, Config, OptimizerKind, Schedule, TaskKind, TranscribeConfig, TranslateConfig};

/// A validation failure: the dotted key and what was expected.
#[derive(Debug)]
pub struct Invalid {
    /// The dotted key (`model.dropout`), when one key is to blame.
    pub key: Option<String>,
    /// What was expected and what was found.
    pub message: String,
}

fn invalid(key: &str, message: impl Into<String>) -> Invalid {
    Invalid { key: Some(key.to_string()), message: message.into() }
}

impl Config {
    /// Checks every range and every combination of sections the tasks rely on.
    pub fn validate(&self) -> Result<(), Invalid> {
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
        if t.eps <= 0.0 || t.eps.is_nan() {
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
        if t.weight_decay > 0.0 && t.optimizer != OptimizerKind::Adamw && t.optimizer != OptimizerKind::Sgd {
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
        if t.class_weights.explicit().iter().any(|w| !(*w >= 0.0 && w.is_finite())) {
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
        let clips = self.data.corpus == data::config::CorpusKind::Audio;
        if self.task == TaskKind::Audio {
            if !fsdd && !clips {
                return Err(invalid(
                    "data.corpus",
                    "task \"audio\" reads corpus \"fsdd\" or \"audio\" (your own clips)",
                ));
            }
            if self.data.max_len.is_some() {
                return Err(invalid("data.max_len", "applies to token sequences, not to audio frames"));
            }
            self.audio.validate(clips)?;
        } else {
            if fsdd || clips {
                return Err(invalid(
                    "task",
                    format!("corpus \"{}\" is read by task = \"audio\"", self.data.corpus.name()),
                ));
            }
            if self.audio != AudioConfig::default() {
                return Err(invalid("audio", "the [audio] section applies to task = \"audio\" only"));
            }
        }
        self.tokenizer.validate().map_err(located)?;
        if self.task == TaskKind::Translate {
            self.validate_translate()?;
        } else if !self.translate.is_default() {
            return Err(invalid("translate", "the [translate] section applies to task = \"translate\" only"));
        }
        if self.task == TaskKind::Tag {
            self.validate_tag()?;
        } else if !self.tag.is_default() {
            return Err(invalid("tag", "the [tag] section applies to task = \"tag\" only"));
        }
        if self.task == TaskKind::Transcribe {
            self.validate_transcribe()?;
        } else if !self.transcribe.is_default() {
            return Err(invalid("transcribe", "the [transcribe] section applies to task = \"transcribe\" only"));
        }
        if self.task == TaskKind::Summarize {
            self.validate_summarize()?;
        } else if !self.summarize.is_default() {
            return Err(invalid("summarize", "the [summarize] section applies to task = \"summarize\" only"));
        }
        Ok(())
    }

    /// Each of the forecasting and long-time-lag tasks reads one corpus kind.
    fn validate_task_corpus(&self) -> Result<(), Invalid> {
        use data::config::CorpusKind;
        let need = match self.task {
            TaskKind::Forecast => Some(CorpusKind::Ett),
            TaskKind::Adding => Some(CorpusKind::Adding),
            TaskKind::Copy => Some(CorpusKind::Copy),
            _ => None,
        };
        if let Some(kind) = need {
            let preset_of_own = kind == CorpusKind::Ett && self.data.corpus == CorpusKind::Series;
            if self.data.corpus != kind && !preset_of_own {
                return Err(invalid(
                    "data.corpus",
                    format!(
                        "task {:?} reads corpus \"{}\", got \"{}\"",
                        self.task.name(),
                        kind.name(),
                        self.data.corpus.name()
                    ),
                ));
            }
        }
        if !self.forecast.is_default() && self.task != TaskKind::Forecast {
            return Err(invalid("forecast.decoder", "the [forecast] section applies to task = \"forecast\" only"));
        }
        if self.task == TaskKind::Forecast {
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

    /// Checks of the rest of the config that only matter for `task = "translate"`.
    fn validate_translate(&self) -> Result<(), Invalid> {
        if !matches!(self.data.corpus, data::config::CorpusKind::Multi30k | data::config::CorpusKind::Pairs) {
            return Err(invalid(
                "data.corpus",
                "task \"translate\" reads a translation corpus (data.corpus = \"pairs\" or \"multi30k\")",
            ));
        }
        if self.model.cell != model::config::CellKind::Lstm {
            return Err(invalid(
                "model.cell",
                "the encoder–decoder needs \"lstm\" cells (the decoder starts from the encoder's h and c)",
            ));
        }
        if self.train.early_stopping_metric == "accuracy" {
            return Err(invalid(
                "train.early_stopping_metric",
                "translation has no accuracy: use \"bleu\" (mode \"max\") or \"loss\" / \"perplexity\" (mode \"min\")",
            ));
        }
        self.translate.validate()
    }
}

impl Config {
    /// Checks of the `[tag]` section and of what `task = "tag"` needs elsewhere.
    fn validate_tag(&self) -> Result<(), Invalid> {
        use data::tag_scheme::TagScheme;
        let t = &self.tag;
        if self.data.dir.is_none() {
            return Err(invalid("data.dir", "task \"tag\" reads its files from a folder: set data.dir"));
        }
        for (key, file) in [
            ("data.train_file", &self.data.train_file),
            ("data.validation_file", &self.data.validation_file),
            ("data.test_file", &self.data.test_file),
        ] {
            if file.is_none() {
                return Err(invalid(key, "task \"tag\" needs the file's name (inside data.dir)"));
            }
        }
        data::conll::TagColumn::parse(t.format, t.column.as_deref()).map_err(|e| {
            invalid("tag.column", e.to_string().trim_start_matches("config key `tag.column`: ").to_string())
        })?;
        let target = t.target();
        if target == TagScheme::Iob1 {
            return Err(invalid(
                "tag.target_scheme",
                "expected \"none\", \"iob2\" or \"bioes\" (IOB1 is read, not written)",
            ));
        }
        if (t.tag_scheme == TagScheme::None) != (target == TagScheme::None) {
            return Err(invalid(
                "tag.target_scheme",
                format!("tag_scheme \"{}\" cannot become \"{}\": plain labels stay \"none\", entity tags need \"iob2\" or \"bioes\"", t.tag_scheme.name(), target.name()),
            ));
        }
        if !["lstm", "cnn", "none"].contains(&t.chars.as_str()) {
            return Err(invalid("tag.chars", format!("expected \"lstm\", \"cnn\" or \"none\", got {:?}", t.chars)));
        }
        for (key, v) in [
            ("tag.char_dim", t.char_dim),
            ("tag.char_hidden", t.char_hidden),
            ("tag.char_width", t.char_width),
            ("tag.max_word_len", t.max_word_len),
            ("tag.min_count", t.min_count),
        ] {
            if v == 0 {
                return Err(invalid(key, "expected a positive integer, got 0"));
            }
        }
        if !(0.0..1.0).contains(&t.singleton_unk) {
            return Err(invalid(
                "tag.singleton_unk",
                format!("expected a probability in [0, 1), got {}", t.singleton_unk),
            ));
        }
        Ok(())
    }
}

impl AudioConfig {
    /// Ranges of the `[audio]` section that do not depend on the recordings; `clips`: the
    /// corpus is "audio" (your own clips) rather than FSDD.
    pub fn validate(&self, clips: bool) -> Result<(), Invalid> {
        if clips {
            if self.split != data::audio::FsddSplit::Official {
                return Err(invalid(
                    "audio.split",
                    "applies to corpus \"fsdd\"; your own clips are split by data.validation_file/test_file \
                     or data.validation_split/test_split",
                ));
            }
            if let Some(r) = self.sample_rate {
                if !(1000..=192_000).contains(&r) {
                    return Err(invalid("audio.sample_rate", format!("expected 1000..=192000 Hz, got {r}")));
                }
                if let Err(e) = data::audio::Mfcc::new(&self.mfcc, r) {
                    return Err(match e {
                        data::audio::AudioError::InvalidConfig { key, reason } => {
                            invalid(&format!("audio.mfcc.{key}"), reason)
                        }
                        other => Invalid { key: None, message: other.to_string() },
                    });
                }
            }
        } else {
            if self.sample_rate.is_some() {
                return Err(invalid(
                    "audio.sample_rate",
                    "applies to corpus \"audio\"; FSDD is read at its own rate (8000 Hz)",
                ));
            }
            if self.stereo != data::audio::an4::Stereo::Refuse {
                return Err(invalid("audio.stereo", "applies to corpus \"audio\"; FSDD recordings are mono"));
            }
        }
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

impl Config {
    /// Checks of the `[summarize]` section and of what `task = "summarize"` needs elsewhere:
    /// a pairs corpus and one word-level tokenizer over whitespace-separated tokens, so that
    /// every source word is one id the copy mechanism can point at.
    fn validate_summarize(&self) -> Result<(), Invalid> {
        use data::config::{PreTokenizer, TokenizerModel};
        if self.data.corpus != data::config::CorpusKind::Pairs {
            return Err(invalid(
                "data.corpus",
                "task \"summarize\" reads document/summary pairs (data.corpus = \"pairs\")",
            ));
        }
        if self.data.max_len.is_some() {
            return Err(invalid("data.max_len", "summarize cuts with summarize.max_source_len and max_target_len"));
        }
        if self.model.cell != model::config::CellKind::Lstm {
            return Err(invalid("model.cell", "the encoder–decoder needs \"lstm\" cells"));
        }
        if !self.tokenizer.joint {
            return Err(invalid(
                "tokenizer.joint",
                "summarize needs one vocabulary for documents and summaries (joint = true)",
            ));
        }
        if self.tokenizer.hub.is_none() && self.tokenizer.path.is_none() {
            if self.tokenizer.model != TokenizerModel::WordLevel {
                return Err(invalid("tokenizer.model", "summarize copies whole words: needs \"word_level\""));
            }
            if self.tokenizer.pre_tokenizer() != PreTokenizer::WhitespaceSplit {
                return Err(invalid(
                    "tokenizer.pre_tokenizer",
                    "summarize reads tokenised text: needs \"whitespace_split\" (one id per space-separated word)",
                ));
            }
        }
        if self.train.early_stopping_metric == "accuracy" {
            return Err(invalid(
                "train.early_stopping_metric",
                "summarisation has no accuracy: use \"rouge1\"/\"rouge2\"/\"rougeL\" (mode \"max\") or \"loss\" (mode \"min\")",
            ));
        }
        self.summarize.validate()
    }
}

impl super::SummarizeConfig {
    /// Ranges of the `[summarize]` section.
    pub fn validate(&self) -> Result<(), Invalid> {
        let bad = |key: &str, message: String| Err(invalid(&format!("summarize.{key}"), message));
        if !(0.0..1.0).contains(&self.output_dropout) {
            return bad("output_dropout", format!("expected a probability in [0, 1), got {}", self.output_dropout));
        }
        if !(self.coverage_weight >= 0.0 && self.coverage_weight.is_finite()) {
            return bad("coverage_weight", format!("expected λ ≥ 0, got {}", self.coverage_weight));
        }
        if self.coverage_from_epoch == 0 {
            return bad("coverage_from_epoch", "epochs count from 1".into());
        }
        for (key, v) in [
            ("max_source_len", self.max_source_len),
            ("max_target_len", self.max_target_len),
            ("max_len", self.max_len),
        ] {
            if v == 0 {
                return bad(key, "expected at least 1".into());
            }
            if v > 100_000 {
                return bad(key, format!("expected at most 100000 tokens, got {v}"));
            }
        }
        if self.beam == 0 || self.beam > 1000 {
            return bad("beam", format!("expected a beam size in 1..=1000, got {}", self.beam));
        }
        if self.valid_beam == 0 || self.valid_beam > 1000 {
            return bad("valid_beam", format!("expected a beam size in 1..=1000, got {}", self.valid_beam));
        }
        if self.min_len > self.max_len {
            return bad("min_len", format!("expected ≤ max_len = {}, got {}", self.max_len, self.min_len));
        }
        if !(self.length_penalty >= 0.0 && self.length_penalty.is_finite()) {
            return bad("length_penalty", format!("expected α ≥ 0, got {}", self.length_penalty));
        }
        Ok(())
    }
}

impl TranslateConfig {
    /// Ranges of the `[translate]` section.
    pub fn validate(&self) -> Result<(), Invalid> {
        let bad = |key: &str, message: String| Err(invalid(&format!("translate.{key}"), message));
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return bad("label_smoothing", format!("expected [0, 1), got {}", self.label_smoothing));
        }
        if !(0.0..1.0).contains(&self.output_dropout) {
            return bad("output_dropout", format!("expected a probability in [0, 1), got {}", self.output_dropout));
        }
        if self.beam == 0 {
            return bad("beam", "expected a positive beam size, got 0".into());
        }
        if self.valid_beam == 0 {
            return bad("valid_beam", "expected a positive beam size, got 0".into());
        }
        if !(self.length_penalty >= 0.0 && self.length_penalty.is_finite()) {
            return bad("length_penalty", format!("expected α ≥ 0, got {}", self.length_penalty));
        }
        if !(self.max_len_ratio >= 0.0 && self.max_len_ratio.is_finite()) {
            return bad("max_len_ratio", format!("expected ≥ 0, got {}", self.max_len_ratio));
        }
        if self.max_len_ratio == 0.0 && self.max_len_extra == 0 {
            return bad(
                "max_len_extra",
                "max_len_ratio and max_len_extra are both 0: no output could be produced".into(),
            );
        }
        Ok(())
    }
}

impl BenchConfig {
    /// Ranges of the `[bench]` section (checked by `train bench`, the one reader).
    pub fn validate(&self) -> Result<(), Invalid> {
        for (key, v, min) in [
            ("bench.steps", self.steps, 1),
            ("bench.slow_steps", self.slow_steps, 1),
            ("bench.seq_len", self.seq_len, 1),
            ("bench.vocab", self.vocab, 2),
        ] {
            if v < min {
                return Err(invalid(key, format!("expected at least {min}, got {v}")));
            }
        }
        Ok(())
    }
}

impl Config {
    /// Checks that only matter for `task = "transcribe"`.
    fn validate_transcribe(&self) -> Result<(), Invalid> {
        let t: &TranscribeConfig = &self.transcribe;
        if self.data.dir.is_some() || self.data.hub.is_some() {
            return Err(invalid(
                "data.dir",
                "task \"transcribe\" reads the manifests named in [transcribe] (transcribe.dir)",
            ));
        }
        if self.data.max_len.is_some() {
            return Err(invalid(
                "data.max_len",
                "applies to token sequences; limit recordings with transcribe.max_seconds",
            ));
        }
        for (key, name) in [("train", &t.train), ("validation", &t.validation), ("test", &t.test)] {
            if name.trim().is_empty() {
                return Err(invalid(&format!("transcribe.{key}"), "expected a manifest file name"));
            }
        }
        let positive = |key: &str, v: usize| {
            if v == 0 {
                Err(invalid(&format!("transcribe.{key}"), "expected a positive integer, got 0"))
            } else {
                Ok(())
            }
        };
        positive("stack", t.stack)?;
        positive("beam", t.beam)?;
        positive("valid_beam", t.valid_beam)?;
        positive("lm_order", t.lm_order)?;
        positive("eval_batch_size", t.eval_batch_size)?;
        if t.stack > 16 {
            return Err(invalid("transcribe.stack", format!("expected 1..=16 frames per step, got {}", t.stack)));
        }
        if !(1000..=192_000).contains(&t.sample_rate) {
            return Err(invalid("transcribe.sample_rate", format!("expected 1000..=192000 Hz, got {}", t.sample_rate)));
        }
        if !(t.max_seconds > 0.0 && t.max_seconds <= 3600.0) {
            return Err(invalid("transcribe.max_seconds", format!("expected (0, 3600], got {}", t.max_seconds)));
        }
        if !(0.0..1.0).contains(&t.input_dropout) {
            return Err(invalid("transcribe.input_dropout", format!("expected [0, 1), got {}", t.input_dropout)));
        }
        if t.reduction == model::ctc::Reduction::None {
            return Err(invalid("transcribe.reduction", "expected \"mean\" or \"sum\""));
        }
        for (key, v) in [("lm_weight", t.lm_weight), ("word_bonus", t.word_bonus)] {
            if !v.is_finite() {
                return Err(invalid(&format!("transcribe.{key}"), format!("expected a finite number, got {v}")));
            }
        }
        if !(0.0..=1.0).contains(&t.augment.time_max_fraction) {
            return Err(invalid(
                "transcribe.augment.time_max_fraction",
                format!("expected [0, 1], got {}", t.augment.time_max_fraction),
            ));
        }
        if let Err(e) = data::audio::logmel::LogMel::new(&t.features, t.sample_rate) {
            return Err(match e {
                data::audio::AudioError::InvalidConfig { key, reason } => {
                    invalid(&format!("transcribe.features.{key}"), reason)
                }
                other => invalid("transcribe.features", other.to_string()),
            });
        }
        Ok(())
    }
}
