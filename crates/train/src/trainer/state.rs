//! What a run carries from step to step, kept in three parts because each is saved its own
//! way: the resume [`Cursor`] and the [`EpochStats`] go into `checkpoints/resume.safetensors`
//! (identical runs write identical bytes), the [`Clock`] into `checkpoints/clock.json` (wall
//! time differs from run to run).

use crate::optim::Optimizer;
use crate::rundir::RunDir;
use crate::{atomic, config::MetricMode};
use anyhow::{anyhow, Context, Result};
use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use model::rng::SeededRngState;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;

/// Where training stands: everything besides tensors that a resumed run needs to take the
/// next step exactly as an uninterrupted run would.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cursor {
    /// The epoch in progress (0-based).
    pub epoch: usize,
    /// Batches of `epoch` already trained.
    pub batch: usize,
    /// Optimizer steps taken so far.
    pub step: u64,
    /// The dropout RNG, as the next step will find it.
    pub dropout_rng: SeededRngState,
    /// How many lines of `metrics.jsonl` belong to this state (a resumed run drops the rest).
    pub metric_lines: usize,
    /// Set when a stopping rule fired: only the final evaluation is left.
    pub finished: bool,
    /// The best validation metric so far and the patience count.
    pub early_stopping: EarlyStopping,
}

/// Early stopping's memory: the best validation metric, its epoch, and the epochs since.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EarlyStopping {
    /// The best value of `train.early_stopping_metric` so far.
    pub best_metric: Option<f64>,
    /// The epoch that reached it (whose weights are `checkpoints/best.safetensors`).
    pub best_epoch: Option<usize>,
    /// Evaluations since the last improvement.
    pub bad_epochs: usize,
}

impl EarlyStopping {
    /// Records a validation value; true when it is the best so far (the first always is).
    pub fn observe(&mut self, value: f64, epoch: usize, mode: MetricMode) -> bool {
        let improved = match (self.best_metric, mode) {
            (None, _) => true,
            (Some(b), MetricMode::Max) => value > b,
            (Some(b), MetricMode::Min) => value < b,
        };
        if improved {
            self.best_metric = Some(value);
            self.best_epoch = Some(epoch);
            self.bad_epochs = 0;
        } else {
            self.bad_epochs += 1;
        }
        improved
    }
}

/// Running totals of the training batches: the current epoch's loss and accuracy (so an
/// epoch's train metrics survive a resume mid-epoch) and the run's token count.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EpochStats {
    /// Training loss (data loss plus penalties) summed over the epoch's examples.
    pub loss_sum: f64,
    /// Correct predictions of the epoch (tasks with an accuracy).
    pub correct: usize,
    /// Examples of the epoch.
    pub seen: usize,
    /// Whether the task reports correct predictions (then lines carry `train_accuracy`).
    pub has_accuracy: bool,
    /// Tokens / time steps trained over the whole run, for throughput.
    pub train_tokens: u64,
}

impl EpochStats {
    /// Adds one training step.
    pub fn add(&mut self, loss: f64, examples: usize, tokens: usize, correct: Option<usize>) {
        self.train_tokens += tokens as u64;
        if let Some(c) = correct {
            self.correct += c;
            self.has_accuracy = true;
        }
        self.seen += examples;
        self.loss_sum += loss * examples as f64;
    }

    /// Mean training loss of the epoch so far (None before its first step).
    pub fn train_loss(&self) -> Option<f64> {
        (self.seen > 0).then(|| self.loss_sum / self.seen as f64)
    }

    /// Training accuracy of the epoch so far, for tasks that report one.
    pub fn train_accuracy(&self) -> Option<f64> {
        (self.seen > 0 && self.has_accuracy).then(|| self.correct as f64 / self.seen as f64)
    }

    /// Starts a new epoch's totals (the run's token count carries on).
    pub fn next_epoch(&mut self) {
        self.loss_sum = 0.0;
        self.correct = 0;
        self.seen = 0;
    }
}

/// Time spent, over all the sessions of a run (for throughput in `summary.json` only).
#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// Seconds spent in training steps.
    pub train_seconds: f64,
    /// Seconds of the whole run (training, evaluation, checkpoints), over all its sessions.
    pub wall_seconds: f64,
}

/// The JSON record stored as the resume file's config.
#[derive(Serialize, Deserialize)]
struct Record {
    cursor: Cursor,
    stats: EpochStats,
    optimizer_step: u64,
}

/// Writes the resume state: weights under `model.`, optimizer moments under `optim.`, and
/// the cursor and statistics as the checkpoint's config, in one atomically written file;
/// the clock goes to `clock.json` beside it so that two identical runs write identical
/// resume files.
pub fn save(
    dir: &RunDir,
    varmap: &VarMap,
    optimizer: &Optimizer,
    cursor: &Cursor,
    stats: &EpochStats,
    clock: &Clock,
) -> Result<()> {
    let mut tensors: Vec<(String, Tensor)> = model::checkpoint::NamedTensors::named_tensors(varmap)
        .into_iter()
        .map(|(k, v)| (format!("model.{k}"), v))
        .collect();
    for (k, v) in optimizer.state_tensors()? {
        tensors.push((format!("optim.{k}"), v));
    }
    let record = Record { cursor: cursor.clone(), stats: stats.clone(), optimizer_step: optimizer.step };
    let meta = serde_json::to_value(&record)?;
    let path = dir.resume_state();
    model::checkpoint::save(&path, &tensors, Some(&meta)).with_context(|| format!("writing {}", path.display()))?;
    atomic::write_json(
        &dir.clock(),
        &json!({"train_seconds": clock.train_seconds, "wall_seconds": clock.wall_seconds, "step": cursor.step}),
    )
}

/// Reads the resume state back: sets the weights and the optimizer's moments and returns
/// the cursor, the statistics and the clock.
pub fn load(dir: &RunDir, varmap: &VarMap, optimizer: &mut Optimizer) -> Result<(Cursor, EpochStats, Clock)> {
    let path = dir.resume_state();
    let ckpt = model::checkpoint::read(&path, &Device::Cpu)?;
    let meta = ckpt.config.clone().ok_or_else(|| anyhow!("{}: no position record", path.display()))?;
    let record: Record = serde_json::from_value(meta).with_context(|| {
        format!("{}: position record (a resume file written by another version of sluice?)", path.display())
    })?;
    let weights = ckpt.with_prefix("model");
    {
        let data = varmap.data().lock().map_err(|_| anyhow!("varmap lock poisoned"))?;
        for (name, var) in data.iter() {
            let t = weights.get(name).ok_or_else(|| anyhow!("{}: missing tensor `model.{name}`", path.display()))?;
            var.set(&t.to_device(var.device())?.to_dtype(var.dtype())?)
                .with_context(|| format!("{}: tensor `model.{name}`", path.display()))?;
        }
    }
    let optim_state: BTreeMap<String, Tensor> = ckpt.with_prefix("optim").into_iter().collect();
    optimizer.load_state(record.optimizer_step, &optim_state)?;
    Ok((record.cursor, record.stats, read_clock(dir)))
}

/// The clock file may be one save behind or ahead after a crash; it only feeds throughput,
/// so a missing or unreadable one counts from zero.
fn read_clock(dir: &RunDir) -> Clock {
    let mut clock = Clock::default();
    if let Ok(text) = std::fs::read_to_string(dir.clock()) {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
            clock.train_seconds = v["train_seconds"].as_f64().unwrap_or(0.0);
            clock.wall_seconds = v["wall_seconds"].as_f64().unwrap_or(0.0);
        }
    }
    clock
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn early_stopping_keeps_the_best_and_counts_the_rest() {
        let mut e = EarlyStopping::default();
        assert!(e.observe(0.5, 0, MetricMode::Max));
        assert!(!e.observe(0.5, 1, MetricMode::Max), "a tie is no improvement");
        assert!(!e.observe(0.4, 2, MetricMode::Max));
        assert_eq!((e.best_metric, e.best_epoch, e.bad_epochs), (Some(0.5), Some(0), 2));
        assert!(e.observe(0.6, 3, MetricMode::Max));
        assert_eq!((e.best_epoch, e.bad_epochs), (Some(3), 0));
        let mut m = EarlyStopping::default();
        m.observe(2.0, 0, MetricMode::Min);
        assert!(m.observe(1.0, 1, MetricMode::Min));
    }

    #[test]
    fn epoch_stats_average_over_examples() {
        let mut s = EpochStats::default();
        assert_eq!(s.train_loss(), None);
        s.add(1.0, 2, 10, None);
        s.add(4.0, 1, 5, None);
        assert_eq!(s.train_loss(), Some(2.0));
        assert_eq!(s.train_accuracy(), None);
        s.add(0.0, 1, 1, Some(1));
        assert_eq!(s.train_accuracy(), Some(0.25));
        s.next_epoch();
        assert_eq!((s.seen, s.train_tokens, s.has_accuracy), (0, 16, true));
    }
}
