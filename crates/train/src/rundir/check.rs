//! The run-loading rule: a run is read with the files it was trained with, or not at all.
//!
//! `config.toml` says which other files the run needs (its tokenizers, the audio normaliser)
//! and what model its checkpoints hold. A missing file is refused rather than rebuilt (a
//! rebuilt tokenizer can number the vocabulary differently), and a `[model]` section that no
//! longer matches the model config recorded in a checkpoint is refused rather than ignored
//! by one subcommand and fatal to another.

use super::RunDir;
use crate::config::{Config, TaskKind as Kind};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};

/// `model::config::LstmConfig` fields and the `[model]` keys they come from. `input_size`
/// follows from the data, and `fused` only picks the code path (same numbers either way).
const LSTM_KEYS: [(&str, &str); 9] = [
    ("hidden_size", "hidden"),
    ("num_layers", "layers"),
    ("bidirectional", "bidirectional"),
    ("variant", "variant"),
    ("cell", "cell"),
    ("dropout", "dropout"),
    ("variational_dropout", "variational"),
    ("orthogonal_init", "orthogonal_init"),
    ("forget_bias", "forget_bias"),
];

impl RunDir {
    /// Reads the run's `config.toml` and checks it against the run's other files
    /// ([`RunDir::check`]): the one way every subcommand loads an existing run.
    pub fn load_config(&self) -> Result<Config> {
        let cfg = crate::config::load_recorded(&self.root)?;
        self.check(&cfg)?;
        Ok(cfg)
    }

    /// Refuses a run whose files do not fit `cfg`: a file training wrote that is missing
    /// ([`RunDir::trained_files`]), or a checkpoint (`best`, `last`) whose recorded model
    /// config differs from `cfg`'s `[model]` section. The message names the file and the
    /// difference.
    pub fn check(&self, cfg: &Config) -> Result<()> {
        for (path, what) in self.trained_files(cfg) {
            if !path.exists() {
                bail!(
                    "{} is missing: the run's {what}, written when it was trained. A run is only loaded with the files it was trained with (a rebuilt one may number its vocabulary differently): restore the file or train a new run",
                    path.display()
                );
            }
        }
        for ckpt in [self.best(), self.last()] {
            if ckpt.exists() {
                check_model(&self.config(), cfg, &ckpt)?;
            }
        }
        Ok(())
    }

    /// The files besides `config.toml` and the checkpoints that training wrote and that
    /// loading the run needs, each with what it is.
    pub fn trained_files(&self, cfg: &Config) -> Vec<(PathBuf, &'static str)> {
        match cfg.task {
            Kind::Classify => vec![(self.tokenizer(), "tokenizer")],
            Kind::Translate if cfg.tokenizer.joint => vec![(self.tokenizer(), "joint tokenizer")],
            Kind::Summarize => vec![(self.tokenizer(), "joint word-level tokenizer")],
            Kind::Translate => {
                vec![(self.tokenizer_src(), "source tokenizer"), (self.tokenizer_tgt(), "target tokenizer")]
            }
            Kind::Audio if cfg.audio.normalization == data::audio::Normalization::TrainSet => {
                vec![(self.normalizer(), "feature normaliser (fitted on the training split)")]
            }
            Kind::Audio | Kind::Forecast | Kind::Adding | Kind::Copy => Vec::new(),
            Kind::Tag => vec![(self.root.join("tag_vocab.json"), "word and character vocabularies")],
            // The names of `task::transcribe::{NORMALIZER_FILE, TRANSCRIPTS_FILE}` (spelled out:
            // rundir sits below the tasks).
            Kind::Transcribe => {
                let t = &cfg.transcribe;
                let mut files = Vec::new();
                if t.normalization == crate::config::SpeechNorm::TrainSet {
                    files.push((
                        self.root.join("speech_normalizer.json"),
                        "feature normaliser (fitted on the training split)",
                    ));
                }
                if t.lm != crate::config::LmKind::None {
                    files.push((
                        self.root.join("lm_transcripts.json"),
                        "language-model transcripts (the training split's)",
                    ));
                }
                files
            }
        }
    }
}

/// Compares the model config recorded in `ckpt` with `cfg`'s `[model]` section: the
/// recurrent layer's settings, and every other `[model]` key the record holds by the same
/// name (`embedding_dim`, `head_dropout`, `pooling`, ...).
fn check_model(config_path: &Path, cfg: &Config, ckpt: &Path) -> Result<()> {
    let Some(meta) = recorded_config(ckpt)? else { return Ok(()) };
    let Some(recorded) = meta.get("model").and_then(Value::as_object) else { return Ok(()) };
    let section = serde_json::to_value(&cfg.model)?;
    let mut differences = Vec::new();
    let lstm = ["lstm", "encoder"].iter().find_map(|k| recorded.get(*k).filter(|v| v.get("hidden_size").is_some()));
    if let Some(lstm) = lstm {
        let input_size = lstm.get("input_size").and_then(Value::as_u64).unwrap_or(0) as usize;
        let expected = serde_json::to_value(cfg.model.lstm(input_size))?;
        for (field, key) in LSTM_KEYS {
            if let (Some(want), Some(have)) = (lstm.get(field), expected.get(field)) {
                if want != have {
                    differences.push((key, have.clone(), want.clone()));
                }
            }
        }
    }
    for (key, have) in section.as_object().into_iter().flatten() {
        if let Some(want) = recorded.get(key) {
            if want != have && !differences.iter().any(|(k, _, _)| k == key) {
                differences.push((key.as_str(), have.clone(), want.clone()));
            }
        }
    }
    if differences.is_empty() {
        return Ok(());
    }
    let list = differences
        .iter()
        .map(|(key, have, want)| format!("`model.{key}` = {have} in config.toml, {want} in the checkpoint"))
        .collect::<Vec<_>>()
        .join("; ");
    bail!(
        "{} does not match the model in {}: {list}. The checkpoint is loaded only with the config it was trained with: restore those values in config.toml",
        config_path.display(),
        ckpt.display()
    )
}

/// The `config` metadata of a sluice checkpoint, read from the header alone (the tensors
/// can be large); None for a file without one.
fn recorded_config(path: &Path) -> Result<Option<Value>> {
    let read = || -> Result<Option<Value>> {
        let mut file = std::fs::File::open(path)?;
        let mut len = [0u8; 8];
        file.read_exact(&mut len)?;
        let len = u64::from_le_bytes(len);
        // safetensors caps its own header at 100 MB.
        if len > 100_000_000 {
            bail!("header of {len} bytes: not a safetensors file");
        }
        let mut header = vec![0u8; len as usize];
        file.read_exact(&mut header)?;
        let header: Value = serde_json::from_slice(&header)?;
        match header.get("__metadata__").and_then(|m| m.get("config")).and_then(Value::as_str) {
            Some(text) => Ok(Some(serde_json::from_str(text).context("the `config` metadata is not JSON")?)),
            None => Ok(None),
        }
    };
    read().with_context(|| format!("reading the model config recorded in {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    fn run_with_checkpoint(meta: Value) -> (tempfile::TempDir, RunDir) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = RunDir::create(tmp.path().join("r")).unwrap();
        let t = vec![("w".to_string(), Tensor::zeros(2, candle_core::DType::F32, &Device::Cpu).unwrap())];
        model::checkpoint::save(dir.best(), &t, Some(&meta)).unwrap();
        (tmp, dir)
    }

    fn classify_config() -> Config {
        let mut cfg = Config::default();
        cfg.model.hidden = 8;
        cfg
    }

    #[test]
    fn a_changed_hidden_size_is_refused_naming_key_and_files() {
        let cfg = classify_config();
        let lstm = serde_json::to_value(cfg.model.lstm(cfg.model.embedding_dim)).unwrap();
        let meta = serde_json::json!({"kind": "classifier", "model": {"embedding_dim": cfg.model.embedding_dim, "lstm": lstm}});
        let (_tmp, dir) = run_with_checkpoint(meta);
        check_model(&dir.config(), &cfg, &dir.best()).unwrap();
        let mut edited = cfg.clone();
        edited.model.hidden = 16;
        edited.model.embedding_dim = 4;
        let err = check_model(&dir.config(), &edited, &dir.best()).unwrap_err().to_string();
        assert!(err.contains("`model.hidden` = 16 in config.toml, 8 in the checkpoint"), "{err}");
        assert!(err.contains("`model.embedding_dim` = 4 in config.toml"), "{err}");
        assert!(err.contains("config.toml") && err.contains("best.safetensors"), "{err}");
        // The code path is not part of the model.
        let mut path_only = cfg.clone();
        path_only.model.fused = !cfg.model.fused;
        check_model(&dir.config(), &path_only, &dir.best()).unwrap();
    }

    #[test]
    fn a_missing_tokenizer_is_refused_naming_the_file() {
        let cfg = classify_config();
        let (_tmp, dir) = run_with_checkpoint(serde_json::json!({}));
        let err = dir.check(&cfg).unwrap_err().to_string();
        assert!(err.contains("tokenizer.json is missing"), "{err}");
        std::fs::write(dir.tokenizer(), "{}").unwrap();
        dir.check(&cfg).unwrap();
    }

    #[test]
    fn foreign_checkpoints_have_nothing_to_compare() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("x.safetensors");
        let t = vec![("w".to_string(), Tensor::zeros(2, candle_core::DType::F32, &Device::Cpu).unwrap())];
        model::checkpoint::save(&p, &t, None).unwrap();
        assert!(recorded_config(&p).unwrap().is_none());
        std::fs::write(&p, b"nonsense").unwrap();
        assert!(recorded_config(&p).is_err());
    }
}
