//! Task kinds behind one interface, so the training loop (`trainer`) is written once.
//!
//! A task owns its data (batches in a deterministic order), its model (in a `VarMap`), its
//! loss and its evaluation. Adding a kind (translation, forecasting, speech, ...) means one
//! module here implementing [`Task`] and one arm in [`build`].

pub mod audio;
pub mod classify;
pub mod forecast;
pub mod synthetic;
pub mod translate;

use crate::config::{Config, Task as Kind};
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
    crate::threads::init(cfg.run.threads);
    match cfg.task {
        Kind::Classify => classify::predict_cli(dir, &cfg, args),
        Kind::Forecast => forecast::predict_cli(dir, &cfg, args),
        Kind::Adding | Kind::Copy => synthetic::predict_cli(dir, &cfg, args),
        Kind::Audio => audio::predict_cli(dir, &cfg, args),
        Kind::Translate => translate::predict_cli(dir, &cfg, args),
    }
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
    match cfg.task {
        Kind::Classify => Ok(Box::new(classify::ClassifyTask::new(cfg, dir, existing_run)?)),
        Kind::Forecast => Ok(Box::new(forecast::ForecastTask::new(cfg)?)),
        Kind::Adding => Ok(Box::new(synthetic::AddingTask::new(cfg)?)),
        Kind::Copy => Ok(Box::new(synthetic::CopyTask::new(cfg)?)),
        Kind::Audio => Ok(Box::new(audio::AudioTask::new(cfg, dir, existing_run)?)),
        Kind::Translate => Ok(Box::new(translate::TranslateTask::new(cfg, dir, existing_run)?)),
    }
}
