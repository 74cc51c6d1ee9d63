//! The crate's error type: every failure names the file, key or tensor involved.

use std::path::PathBuf;

/// A tensor whose shape in a checkpoint differs from the one the model expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MisShaped {
    /// The tensor's name in the checkpoint.
    pub name: String,
    /// The shape the model has.
    pub expected: Vec<usize>,
    /// The shape in the file.
    pub found: Vec<usize>,
}

/// Everything the model crate can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An error from a candle tensor op.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),

    /// A config value out of range or inconsistent with another key.
    #[error("config key `{key}`: {msg}")]
    Config {
        /// The dotted config key, e.g. `hidden_size`.
        key: String,
        /// What was expected.
        msg: String,
    },

    /// A device string that is not one of "cpu", "cuda", "cuda:N", "metal", "auto",
    /// or a device this build/machine cannot provide.
    #[error("device `{spec}`: {msg}")]
    Device {
        /// The device string as given.
        spec: String,
        /// Why it cannot be used.
        msg: String,
    },

    /// Bad arguments to `forward` (lengths, initial states, input shape).
    #[error("lstm input: {0}")]
    Input(String),

    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// A file that is not a readable safetensors checkpoint (truncated, not safetensors,
    /// bad metadata, unsupported dtype or format version).
    #[error("checkpoint {path}: {msg}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        msg: String,
    },

    /// A checkpoint whose tensors do not match the model: every offending tensor is listed.
    #[error("checkpoint {path} does not match the model: {}", mismatch_summary(.missing, .extra, .mis_shaped))]
    CheckpointMismatch {
        /// The file.
        path: PathBuf,
        /// Tensors the model has and the file lacks.
        missing: Vec<String>,
        /// Tensors in the file the model does not have.
        extra: Vec<String>,
        /// Tensors present in both with different shapes.
        mis_shaped: Vec<MisShaped>,
    },
}

fn mismatch_summary(missing: &[String], extra: &[String], mis_shaped: &[MisShaped]) -> String {
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!("missing tensors [{}]", missing.join(", ")));
    }
    if !extra.is_empty() {
        parts.push(format!("unexpected tensors [{}]", extra.join(", ")));
    }
    if !mis_shaped.is_empty() {
        let s: Vec<String> =
            mis_shaped.iter().map(|m| format!("{} (expected {:?}, found {:?})", m.name, m.expected, m.found)).collect();
        parts.push(format!("mis-shaped tensors [{}]", s.join(", ")));
    }
    parts.join("; ")
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;
