#![warn(missing_docs)]
//! sluice training library: configs, the training loop, metrics and run directories.
//!
//! The trainer is open: implement [`trainer::Task`] for a model of your own and
//! [`trainer::Trainer`] trains it with our loop, checkpoints and exact resume (see
//! `examples/custom_task.rs`). The `train` binary is a thin CLI over [`launch`], which sends
//! the built-in tasks ([`task`]) through the same door.

pub mod atomic;
pub mod bench;
pub mod bleu;
pub mod config;
pub mod confusion;
pub mod cpu;
pub mod curves;
pub mod export;
pub mod inspect;
pub mod launch;
pub mod loss;
pub mod memory;
pub mod metrics;
pub mod optim;
pub mod overrides;
pub mod plot;
pub mod prune;
pub mod prune_units;
pub mod rouge;
pub mod rundir;
pub mod schedule;
pub mod seqeval;
pub mod serve;
pub mod sweep;
pub mod task;
pub mod threads;
pub mod trainer;
pub mod wer;

use serde_json::{json, Value};

/// Versions of the crates that shape the numbers, for `summary.json`.
pub fn versions() -> Value {
    json!({
        "sluice": env!("CARGO_PKG_VERSION"),
        "candle": env!("SLUICE_CANDLE_VERSION"),
        "tokenizers": env!("SLUICE_TOKENIZERS_VERSION"),
        "gemm": env!("SLUICE_GEMM_VERSION"),
        "rustc": option_env!("SLUICE_RUSTC_VERSION").unwrap_or("unknown"),
    })
}

/// The commit of the working tree the binary runs in, when git can tell.
pub fn git_commit() -> Option<String> {
    let out = std::process::Command::new("git").args(["rev-parse", "HEAD"]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}
