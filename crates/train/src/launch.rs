//! The built-in tasks through the open trainer: what `train --config`, `train resume` and
//! `train eval` run. Each is the same few calls a library user makes with a task of their
//! own (see [`crate::trainer`]), plus the checks a run from a config file needs: the memory
//! estimate before anything is allocated, and the run-loading rule for an existing run.

use crate::config::Config;
use crate::rundir::RunDir;
use crate::trainer::{Options, SplitName, Trainer};
use crate::{memory, task};
use anyhow::Result;
use serde_json::{Map, Value};

/// Trains the task `cfg` names from scratch (`resume = false`; `dir` is new and holds the
/// resolved `config.toml`) or continues the run in `dir`; returns the summary.
pub fn run(cfg: &Config, dir: &RunDir, resume: bool, opts: &Options) -> Result<Map<String, Value>> {
    let trainer = Trainer::new(&cfg.train, cfg.run.seed, dir, opts.clone());
    if resume {
        trainer.check_resumable()?;
        // Once training has begun, the run is loaded by the rule every subcommand follows.
        if dir.resume_state().exists() || dir.best().exists() {
            dir.check(cfg)?;
        }
    }
    memory::check(cfg)?;
    let mut task = task::build(cfg, dir, resume)?;
    if resume {
        trainer.resume(task.as_mut())
    } else {
        trainer.fit(task.as_mut())
    }
}

/// Evaluation of a finished run from its best checkpoint (`train eval`).
pub fn eval(dir: &RunDir, split: &str) -> Result<Map<String, Value>> {
    let split = SplitName::parse(split)?;
    let cfg = dir.load_config()?;
    let mut task = task::build(&cfg, dir, true)?;
    let ckpt = model::checkpoint::load_into_varmap(dir.best(), task.varmap())?;
    if let Some(c) = &ckpt.compressed {
        let kernels = task.attach_compressed(c)?;
        crate::export::report_loaded(c, kernels);
    }
    task.evaluate(split)
}
