//! Task kinds behind one interface, so the training loop (`trainer`) is written once.
//!
//! A task owns its data (batches in a deterministic order), its model (in a `VarMap`), its
//! loss and its evaluation. Adding a kind (summarisation, speech, ...) means: its module here,
//! implementing [`Task`] and exporting a [`Registration`] (how to build it, how `train
//! predict` uses a finished run), its variant of [`TaskKind`] in `config`, and one arm in
//! [`registration`] (the compiler points there, the match being exhaustive).

pub mod audio;
pub mod classify;
pub mod forecast;
pub mod summarize;
pub mod synthetic;
pub mod tag;
pub mod transcribe;
pub mod translate;

use crate::config::{Config, TaskKind};
use crate::rundir::RunDir;
use anyhow::Result;

pub use crate::trainer::{SplitName, StepOutput, Task};

/// Arguments of `train predict`; each task reads the ones it understands.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PredictArgs {
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
    /// Inputs: texts (classify) or files; read from stdin, one per line, when none are given.
    pub inputs: Vec<String>,
    /// Forecasting: write every test window's forecast and truth to this CSV.
    #[arg(long, value_name = "OUT.csv")]
    pub csv: Option<std::path::PathBuf>,
    /// Forecasting: draw forecast against truth for one test window to this SVG.
    #[arg(long, value_name = "OUT.svg")]
    pub plot: Option<std::path::PathBuf>,
    /// Forecasting: the test window to plot (0-based; default: the last one).
    #[arg(long)]
    pub window: Option<usize>,
}

/// `train predict`: dispatches on the task recorded in the run's config.
pub fn predict(dir: &RunDir, args: &PredictArgs) -> Result<()> {
    let cfg = dir.load_config()?;
    (registration(cfg.task).predict)(dir, &cfg, args)
}

/// The inputs given on the command line, or stdin's lines when there are none.
pub fn inputs_or_stdin(inputs: &[String]) -> Result<Vec<String>> {
    use std::io::{BufRead, IsTerminal};
    if !inputs.is_empty() {
        return Ok(inputs.to_vec());
    }
    if std::io::stdin().is_terminal() {
        eprintln!("reading inputs from stdin, one per line (Ctrl-D to end)");
    }
    let lines = std::io::stdin().lock().lines().collect::<std::io::Result<Vec<_>>>();
    anyhow::Context::context(lines, "reading stdin")
}

/// Builds the task named by the config. `existing_run` reloads run artefacts (tokenizer,
/// normalisation statistics) instead of fitting them again.
pub fn build(cfg: &Config, dir: &RunDir, existing_run: bool) -> Result<Box<dyn Task>> {
    (registration(cfg.task).build)(cfg, dir, existing_run)
}

/// A task module's entry points, by which the registry reaches it.
#[derive(Clone, Copy)]
pub struct Registration {
    /// Builds the task for training or evaluation (see [`build`]).
    pub build: fn(&Config, &RunDir, bool) -> Result<Box<dyn Task>>,
    /// `train predict` on a finished run of this kind (see [`predict`]).
    pub predict: fn(&RunDir, &Config, &PredictArgs) -> Result<()>,
}

/// The registry: each task kind's module. One line per kind.
pub fn registration(kind: TaskKind) -> Registration {
    match kind {
        TaskKind::Classify => classify::REGISTRATION,
        TaskKind::Audio => audio::REGISTRATION,
        TaskKind::Forecast => forecast::REGISTRATION,
        TaskKind::Adding => synthetic::ADDING,
        TaskKind::Copy => synthetic::COPY,
        TaskKind::Translate => translate::REGISTRATION,
        TaskKind::Summarize => summarize::REGISTRATION,
        TaskKind::Tag => tag::REGISTRATION,
        TaskKind::Transcribe => transcribe::REGISTRATION,
    }
}
