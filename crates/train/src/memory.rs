//! A memory estimate from the config alone, made before anything is allocated, so that a
//! size that cannot fit (`--set model.hidden=4000000000`) is refused with the numbers instead
//! of being killed by the kernel's out-of-memory killer halfway through building the model.
//!
//! The estimate is rough on purpose, erring high: parameters (embeddings, every recurrent
//! layer and direction with four gate blocks, the translation decoder and generator) × 4
//! bytes × 4 copies (weights, gradients, Adam's two moments), plus activations kept for the
//! backward pass from the batch size, the sequence length, the hidden size, the layers and
//! the directions. It is compared with `MemAvailable` from `/proc/meminfo` (Linux; elsewhere
//! nothing is checked), and only for runs whose tensors live in host memory.

use crate::config::Config;
use anyhow::{bail, Result};
use data::config::CorpusKind;

/// Bytes of one f32.
const F32: f64 = 4.0;
/// Copies of each parameter: weights, gradients and Adam's two moments (an upper bound for
/// SGD, which keeps at most one).
const PARAM_COPIES: f64 = 4.0;
/// Values kept per hidden unit, time step, layer and direction for the backward pass: four
/// gate pre-activations and activations, c, tanh(c), h, and their gradients in flight.
const ACTIVATIONS_PER_UNIT: f64 = 16.0;
/// Gate blocks of an LSTM cell (GRU and RNN cells have fewer: an upper bound for them).
const GATES: f64 = 4.0;
/// Sequence length assumed for text when `data.max_len` is unset (SST-2 and Multi30k
/// sentences are shorter).
const TEXT_LEN: usize = 64;

/// What a config asks of memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    /// Trainable parameters.
    pub parameters: f64,
    /// Bytes for the parameters with their gradients and optimizer moments.
    pub parameter_bytes: f64,
    /// Bytes of activations for one training batch.
    pub activation_bytes: f64,
    /// The sequence length assumed and the config key it comes from.
    pub steps: (usize, &'static str),
}

impl Estimate {
    /// Everything together.
    pub fn total_bytes(&self) -> f64 {
        self.parameter_bytes + self.activation_bytes
    }
}

/// Parameters of a stack of recurrent layers: `GATES` blocks of (input + hidden) weights and
/// two biases per unit, per layer and direction; layers above the first read every direction.
fn recurrent_parameters(input: f64, hidden: f64, layers: f64, directions: f64) -> f64 {
    let block = |inp: f64| directions * GATES * hidden * (inp + hidden + 2.0);
    block(input) + (layers - 1.0).max(0.0) * block(hidden * directions)
}

/// The estimate for `cfg` (f64 throughout: absurd sizes must not overflow).
pub fn estimate(cfg: &Config) -> Estimate {
    let m = &cfg.model;
    let hidden = m.hidden as f64;
    let layers = m.layers as f64;
    let directions = if m.bidirectional { 2.0 } else { 1.0 };
    let emb = m.embedding_dim as f64;
    let vocab = cfg.tokenizer.vocab_size as f64;
    let batch = cfg.train.batch_size as f64;
    let text_len = match cfg.data.max_len {
        _ if cfg.task == crate::config::TaskKind::Summarize => {
            (cfg.summarize.max_source_len, "summarize.max_source_len")
        }
        Some(n) => (n, "data.max_len"),
        None => (TEXT_LEN, "data.max_len unset: a typical sentence"),
    };
    let encoder = |input: f64| recurrent_parameters(input, hidden, layers, directions);
    let head = hidden * directions * 16.0;
    if cfg.task == crate::config::TaskKind::Tag {
        // Words and characters: a vocabulary of tokenizer.vocab_size words at most (the
        // training words are counted only later), the char BiLSTM's two directions, and
        // per step the word's characters through it.
        let t = &cfg.tag;
        let chars = (t.char_dim + 2 * t.char_hidden) as f64;
        let char_rnn = recurrent_parameters(t.char_dim as f64, t.char_hidden as f64, 1.0, 2.0);
        let params = vocab * emb + 256.0 * t.char_dim as f64 + char_rnn + encoder(emb + chars) + head;
        let per_word = t.max_word_len as f64 * 2.0 * t.char_hidden as f64 * ACTIVATIONS_PER_UNIT;
        let steps = (text_len.0, text_len.1);
        let per_step = layers * directions * hidden * ACTIVATIONS_PER_UNIT + emb + chars + per_word;
        return Estimate {
            parameters: params,
            parameter_bytes: params * F32 * PARAM_COPIES,
            activation_bytes: batch * steps.0 as f64 * per_step * F32,
            steps,
        };
    }
    // (parameters, steps, extra activation floats per batch element and step)
    let (parameters, steps, extra) = match cfg.data.corpus {
        _ if cfg.task == crate::config::TaskKind::Transcribe => {
            let t = &cfg.transcribe;
            let input = (t.features.num_mels * t.stack) as f64;
            let steps = (t.max_seconds / t.features.frame_step_s.max(1e-3) / t.stack.max(1) as f64).ceil() as usize;
            (encoder(input) + head, (steps, "transcribe.max_seconds"), input)
        }
        CorpusKind::Sst2 | CorpusKind::Text => (vocab * emb + encoder(emb) + head, text_len, emb),
        CorpusKind::Multi30k | CorpusKind::Pairs => {
            let dec = hidden * directions;
            let decoder = recurrent_parameters(emb + dec, dec, layers, 1.0);
            let attention = 2.0 * dec * dec + dec;
            let params = 2.0 * vocab * emb + encoder(emb) + decoder + attention + dec * vocab;
            // Source and target sides (the step count is their sum): embeddings on both, and on
            // the target side the generator's logits, their softmax and gradient.
            (params, (text_len.0 * 2, text_len.1), emb + 1.5 * vocab)
        }
        CorpusKind::Ett | CorpusKind::Series => {
            (encoder(16.0) + head, (cfg.data.input_len + cfg.data.horizon, "data.input_len"), 16.0)
        }
        CorpusKind::Adding => (encoder(2.0) + head, (cfg.data.length, "data.length"), 2.0),
        CorpusKind::Copy => (encoder(10.0) + head, (cfg.data.length + 20, "data.length"), 10.0),
        CorpusKind::Fsdd | CorpusKind::Audio => {
            let features = cfg.audio.mfcc.num_ceps as f64;
            // Recordings of up to two seconds.
            let frames = (2.0 / cfg.audio.mfcc.frame_step_s.max(1e-3)).ceil() as usize;
            (encoder(features) + head, (frames, "audio.mfcc.frame_step_s"), features)
        }
    };
    let per_step = layers * directions * hidden * ACTIVATIONS_PER_UNIT + extra;
    Estimate {
        parameters,
        parameter_bytes: parameters * F32 * PARAM_COPIES,
        activation_bytes: batch * steps.0 as f64 * per_step * F32,
        steps,
    }
}

/// Refuses `cfg` when its estimate exceeds the memory available to this process.
pub fn check(cfg: &Config) -> Result<()> {
    let on_host = matches!(cfg.run.device.as_str(), "cpu" | "auto");
    let Some(available) = available_bytes().filter(|_| on_host) else { return Ok(()) };
    refuse_if_too_large(cfg, &estimate(cfg), available)
}

fn refuse_if_too_large(cfg: &Config, e: &Estimate, available: u64) -> Result<()> {
    if e.total_bytes() <= available as f64 {
        return Ok(());
    }
    let m = &cfg.model;
    let text =
        matches!(cfg.data.corpus, CorpusKind::Sst2 | CorpusKind::Multi30k | CorpusKind::Text | CorpusKind::Pairs);
    let mut sizes = vec![
        format!("model.hidden = {}", m.hidden),
        format!("model.layers = {}", m.layers),
        format!("model.bidirectional = {}", m.bidirectional),
    ];
    if text {
        sizes.push(format!("model.embedding_dim = {}", m.embedding_dim));
        sizes.push(format!("tokenizer.vocab_size = {}", cfg.tokenizer.vocab_size));
    }
    bail!(
        "the model does not fit in memory: about {} needed ({:.3e} parameters: {} with their gradients and optimizer moments; {} of activations for train.batch_size = {} × {} steps ({})), but {} is available (MemAvailable in /proc/meminfo). Sizes from the config: {}; make them smaller",
        human(e.total_bytes()),
        e.parameters,
        human(e.parameter_bytes),
        human(e.activation_bytes),
        cfg.train.batch_size,
        e.steps.0,
        e.steps.1,
        human(available as f64),
        sizes.join(", ")
    )
}

/// `MemAvailable` in bytes (Linux); None where it cannot be read.
pub fn available_bytes() -> Option<u64> {
    parse_meminfo(&std::fs::read_to_string("/proc/meminfo").ok()?)
}

fn parse_meminfo(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Bytes in binary units, up to exbibytes, then in scientific notation.
fn human(bytes: f64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = bytes;
    for unit in UNITS {
        if v < 1024.0 {
            return format!("{v:.1} {unit}");
        }
        v /= 1024.0;
    }
    format!("{bytes:.2e} B")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sst2(hidden: usize) -> Config {
        let mut cfg = Config::default();
        cfg.model.hidden = hidden;
        cfg.model.embedding_dim = 10;
        cfg.model.layers = 2;
        cfg.model.bidirectional = true;
        cfg.tokenizer.vocab_size = 100;
        cfg.train.batch_size = 4;
        cfg.data.max_len = Some(5);
        cfg
    }

    #[test]
    fn parameter_count_matches_pytorch_lstm() {
        // nn.LSTM(10, 8, num_layers=2, bidirectional=True): 4·8·(10+8+2)·2 + 4·8·(16+8+2)·2.
        assert_eq!(recurrent_parameters(10.0, 8.0, 2.0, 2.0), 1280.0 + 1664.0);
        assert_eq!(recurrent_parameters(3.0, 4.0, 1.0, 1.0), 16.0 * 9.0);
    }

    #[test]
    fn arithmetic_of_a_small_classifier() {
        let e = estimate(&sst2(8));
        let params = 100.0 * 10.0 + 2944.0 + 16.0 * 16.0;
        assert_eq!(e.parameters, params);
        assert_eq!(e.parameter_bytes, params * 16.0);
        // batch 4 × 5 steps × (2 layers · 2 directions · 8 units · 16 values + 10 embedding values) × 4 B
        assert_eq!(e.activation_bytes, 4.0 * 5.0 * (2.0 * 2.0 * 8.0 * 16.0 + 10.0) * 4.0);
        assert_eq!(e.steps, (5, "data.max_len"));
    }

    #[test]
    fn absurd_sizes_are_refused_naming_the_key_and_normal_ones_pass() {
        let huge = sst2(4_000_000_000);
        let e = estimate(&huge);
        assert!(e.total_bytes().is_finite() && e.total_bytes() > 1e20);
        let err = refuse_if_too_large(&huge, &e, 16 << 30).unwrap_err().to_string();
        assert!(err.contains("model.hidden = 4000000000"), "{err}");
        assert!(err.contains("16.0 GiB is available"), "{err}");
        for text in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs")).unwrap() {
            let path = text.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if name.ends_with(".sweep.toml") || name.starts_with("bench_") {
                continue;
            }
            let cfg = crate::config::load(&path, &[]).unwrap().config;
            let e = estimate(&cfg);
            assert!(e.total_bytes() < (4u64 << 30) as f64, "{name}: {} estimated", human(e.total_bytes()));
        }
    }

    #[test]
    fn meminfo_and_units() {
        let text = "MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:   2048 kB\n";
        assert_eq!(parse_meminfo(text), Some(2048 * 1024));
        assert_eq!(parse_meminfo("MemTotal: 1 kB\n"), None);
        assert_eq!(human(512.0), "512.0 B");
        assert_eq!(human(3.0 * 1024.0 * 1024.0 * 1024.0), "3.0 GiB");
        assert!(human(1e25).ends_with("e25 B"));
    }
}
