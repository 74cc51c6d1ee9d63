//! The training loop, readable top to bottom: data → tokenizer → model → epochs of
//! (forward, loss, backward, clip, update, schedule) → evaluation → checkpoints → summary.
//!
//! Exact resume: `checkpoints/resume.safetensors` holds, in one atomically written file, the
//! weights, the optimizer moments and a JSON record of the position (epoch, batch index,
//! step), the dropout RNG state, the early-stopping state and how many `metrics.jsonl`
//! lines belong to it. Batch order is a pure function of (seed, epoch), so resuming is
//! skipping batches; nothing depends on wall time.

use crate::config::{Config, MetricMode};
use crate::optim::{Optimizer, Param};
use crate::rundir::RunDir;
use crate::task::{self, SplitName, Task};
use crate::{atomic, schedule};
use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use model::rng::{SeededRng, SeededRngState};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// Seconds spent in training steps.
    pub train_seconds: f64,
    /// Seconds of the whole run (training, evaluation, checkpoints), over all its sessions.
    pub wall_seconds: f64,
}

/// Everything besides tensors that a resumed run needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Position {
    pub epoch: usize,
    /// Batches of `epoch` already trained.
    pub batch: usize,
    pub step: u64,
    pub dropout_rng: SeededRngState,
    pub best_metric: Option<f64>,
    pub best_epoch: Option<usize>,
    pub bad_epochs: usize,
    pub metric_lines: usize,
    pub train_tokens: u64,
    /// Not saved in the resume file (see [`save_resume`]).
    #[serde(skip)]
    pub clock: Clock,
    /// Running training loss (summed over examples), correct count and examples of the
    /// current epoch, so an epoch's train metrics survive a resume mid-epoch.
    pub epoch_loss_sum: f64,
    pub epoch_correct: usize,
    pub epoch_seen: usize,
    pub finished: bool,
}

pub struct Options {
    pub quiet: bool,
}

/// NaN injection for the test suite: `SLUICE_TEST_NAN_AT_STEP=N` makes the loss NaN at
/// step N, to check that the run stops cleanly with its last good checkpoint.
fn injected_nan(step: u64) -> bool {
    std::env::var("SLUICE_TEST_NAN_AT_STEP").ok().and_then(|s| s.parse::<u64>().ok()) == Some(step)
}

/// Crash injection for the test suite: `SLUICE_TEST_KILL_AT_STEP=N` SIGKILLs the process
/// right after step N, as an out-of-memory killer or a pulled plug would.
fn kill_requested(step: u64) -> bool {
    std::env::var("SLUICE_TEST_KILL_AT_STEP").ok().and_then(|s| s.parse::<u64>().ok()) == Some(step)
}

fn kill_self() -> ! {
    let pid = std::process::id().to_string();
    let _ = std::process::Command::new("kill").args(["-9", &pid]).status();
    std::process::abort()
}

pub fn device_of(cfg: &Config) -> Result<Device> {
    model::device::parse_device(&cfg.run.device).with_context(|| "config key `run.device`")
}

/// Trains from scratch (`resume = false`) or continues the run in `dir`.
pub fn run(cfg: &Config, dir: &RunDir, resume: bool, opts: &Options) -> Result<Map<String, Value>> {
    if resume && !dir.resume_state().exists() && dir.summary().exists() {
        bail!(
            "{} is finished and has no resume state (e.g. a pruned run): nothing to resume; `train eval --run {}` re-evaluates it",
            dir.root.display(),
            dir.root.display()
        );
    }
    let mut task = task::build(cfg, dir, resume)?;
    let params = collect_params(task.as_ref());
    let mut optimizer = Optimizer::new(&cfg.train);
    let mut pos = Position {
        epoch: 0,
        batch: 0,
        step: 0,
        dropout_rng: SeededRng::new(cfg.run.seed, "dropout").state(),
        best_metric: None,
        best_epoch: None,
        bad_epochs: 0,
        metric_lines: 0,
        clock: Clock::default(),
        train_tokens: 0,
        epoch_loss_sum: 0.0,
        epoch_correct: 0,
        epoch_seen: 0,
        finished: false,
    };
    if resume && dir.resume_state().exists() {
        pos = load_resume(dir, task.varmap(), &mut optimizer)?;
        let mut lines = dir.metric_lines()?;
        lines.truncate(pos.metric_lines);
        dir.write_metric_lines(&lines)?;
        tracing::info!(epoch = pos.epoch, batch = pos.batch, step = pos.step, "resuming");
    } else if resume {
        tracing::info!("no resume state yet: starting from the beginning");
    }
    let mut rng = SeededRng::from_state(&pos.dropout_rng)?;
    let session = Instant::now();
    let wall_base = pos.clock.wall_seconds;
    let mut metric_lines = dir.metric_lines()?;
    let steps_per_epoch = task.start_epoch(0)?;
    let total_steps = total_steps(cfg, steps_per_epoch);
    let mut has_accuracy = false;

    while !pos.finished {
        let epoch_start = Instant::now();
        let num_batches = task.start_epoch(pos.epoch)?;
        let bar = progress_bar(opts.quiet, num_batches, pos.epoch);
        bar.set_position(pos.batch as u64);
        let mut tokens = 0u64;
        while pos.batch < num_batches {
            if cfg.train.max_steps > 0 && pos.step as usize >= cfg.train.max_steps {
                break;
            }
            let t0 = Instant::now();
            let out = task.train_step(pos.batch, &mut rng)?;
            let loss_value = out.loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            let loss_value = if injected_nan(pos.step) { f64::NAN } else { loss_value };
            if !loss_value.is_finite() {
                bar.abandon();
                bail!(
                    "loss is {loss_value} at step {} (epoch {}, batch {}): training stopped; the last good state is {} (`train resume --run {}` continues from it)",
                    pos.step,
                    pos.epoch,
                    pos.batch,
                    dir.resume_state().display(),
                    dir.root.display()
                );
            }
            let grads = out.loss.backward()?;
            let lr = schedule::lr_at(&cfg.train, pos.step as usize, total_steps);
            let sparse = task.sparse_grads();
            let report = optimizer
                .step_sparse(&params, &grads, &sparse, lr)
                .with_context(|| format!("optimizer step {} (epoch {}, batch {})", pos.step, pos.epoch, pos.batch))?;
            pos.step += 1;
            pos.batch += 1;
            tokens += out.tokens as u64;
            pos.train_tokens += out.tokens as u64;
            pos.clock.train_seconds += t0.elapsed().as_secs_f64();
            if let Some(c) = out.correct {
                pos.epoch_correct += c;
                has_accuracy = true;
            }
            pos.epoch_seen += out.examples;
            pos.epoch_loss_sum += (loss_value + report.penalty) * out.examples as f64;
            if kill_requested(pos.step) {
                kill_self();
            }
            bar.set_position(pos.batch as u64);
            let acc = if has_accuracy {
                format!(" acc {:.3}", pos.epoch_correct as f64 / pos.epoch_seen as f64)
            } else {
                String::new()
            };
            bar.set_message(format!(
                "loss {:.4}{acc} {:.0} tok/s",
                pos.epoch_loss_sum / pos.epoch_seen as f64,
                tokens as f64 / epoch_start.elapsed().as_secs_f64().max(1e-9)
            ));
            if cfg.train.checkpoint_every > 0
                && pos.step.is_multiple_of(cfg.train.checkpoint_every as u64)
                && pos.batch < num_batches
            {
                pos.dropout_rng = rng.state();
                pos.metric_lines = metric_lines.len();
                pos.clock.wall_seconds = wall_base + session.elapsed().as_secs_f64();
                save_resume(dir, task.varmap(), &optimizer, &pos)?;
            }
        }
        bar.finish_and_clear();
        let epoch_done = pos.batch >= num_batches;
        let out_of_steps = cfg.train.max_steps > 0 && pos.step as usize >= cfg.train.max_steps;

        // Evaluate at each epoch end (and where max_steps cut an epoch short).
        let eval = task.evaluate(SplitName::Validation)?;
        let mut line = Map::new();
        line.insert("epoch".into(), json!(pos.epoch));
        line.insert("step".into(), json!(pos.step));
        line.insert("split".into(), json!("validation"));
        if pos.epoch_seen > 0 {
            line.insert("train_loss".into(), json!(pos.epoch_loss_sum / pos.epoch_seen as f64));
            if has_accuracy {
                line.insert("train_accuracy".into(), json!(pos.epoch_correct as f64 / pos.epoch_seen as f64));
            }
        }
        line.extend(eval.clone());
        metric_lines.push(serde_json::to_string(&line)?);
        dir.write_metric_lines(&metric_lines)?;
        // A plot is a convenience: failing to draw it must not stop training.
        if let Err(e) = crate::curves::write_for_run(dir, &cfg.train.early_stopping_metric) {
            tracing::warn!("could not write {}: {e:#}", crate::curves::FILE);
        }
        if !opts.quiet {
            eprintln!("epoch {} step {}: validation {}", pos.epoch, pos.step, headline(&eval));
        }
        let metric_name = &cfg.train.early_stopping_metric;
        let value = eval.get(metric_name).and_then(Value::as_f64).ok_or_else(|| {
            anyhow!(
                "config key `train.early_stopping_metric`: no validation metric named `{metric_name}` (have: {})",
                eval.iter().filter(|(_, v)| v.is_number()).map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(", ")
            )
        })?;
        let improved = match (pos.best_metric, cfg.train.early_stopping_mode) {
            (None, _) => true,
            (Some(b), MetricMode::Max) => value > b,
            (Some(b), MetricMode::Min) => value < b,
        };
        if improved {
            pos.best_metric = Some(value);
            pos.best_epoch = Some(pos.epoch);
            pos.bad_epochs = 0;
            save_weights(&dir.best(), task.as_ref())?;
        } else {
            pos.bad_epochs += 1;
        }
        save_weights(&dir.last(), task.as_ref())?;
        if epoch_done {
            pos.epoch += 1;
            pos.batch = 0;
            pos.epoch_loss_sum = 0.0;
            pos.epoch_correct = 0;
            pos.epoch_seen = 0;
        }
        let patience_out = cfg.train.patience > 0 && pos.bad_epochs >= cfg.train.patience;
        let epochs_out = cfg.train.epochs > 0 && pos.epoch >= cfg.train.epochs;
        if patience_out {
            tracing::info!(epoch = pos.epoch, "early stopping: no improvement in {} epochs", pos.bad_epochs);
        }
        pos.finished = out_of_steps || patience_out || epochs_out;
        pos.dropout_rng = rng.state();
        pos.metric_lines = metric_lines.len();
        pos.clock.wall_seconds = wall_base + session.elapsed().as_secs_f64();
        save_resume(dir, task.varmap(), &optimizer, &pos)?;
    }
    pos.clock.wall_seconds = wall_base + session.elapsed().as_secs_f64();
    finish(cfg, dir, task.as_ref(), &pos, &mut metric_lines)
}

/// A short line of the main metrics for the console.
fn headline(m: &Map<String, Value>) -> String {
    ["loss", "accuracy", "macro_f1", "mse", "mae", "bleu", "perplexity"]
        .iter()
        .filter_map(|k| m.get(*k).and_then(Value::as_f64).map(|v| format!("{k} {v:.4}")))
        .collect::<Vec<_>>()
        .join(" ")
}

fn total_steps(cfg: &Config, steps_per_epoch: usize) -> usize {
    let by_epochs = cfg.train.epochs * steps_per_epoch;
    match (cfg.train.max_steps, cfg.train.epochs) {
        (0, _) => by_epochs,
        (m, 0) => m,
        (m, _) => m.min(by_epochs),
    }
}

/// Final evaluation from the best checkpoint on validation and test, and `summary.json`.
fn finish(
    cfg: &Config,
    dir: &RunDir,
    task: &dyn Task,
    pos: &Position,
    metric_lines: &mut Vec<String>,
) -> Result<Map<String, Value>> {
    model::checkpoint::load_into_varmap(dir.best(), task.varmap())?;
    let mut splits = Map::new();
    for split in [SplitName::Validation, SplitName::Test] {
        let m = task.evaluate(split)?;
        let mut line = Map::new();
        line.insert("epoch".into(), json!(pos.best_epoch));
        line.insert("step".into(), json!(pos.step));
        line.insert("split".into(), json!(split.name()));
        line.insert("final".into(), json!(true));
        line.extend(m.clone());
        metric_lines.push(serde_json::to_string(&line)?);
        splits.insert(split.name().into(), Value::Object(m));
    }
    dir.write_metric_lines(metric_lines)?;
    let mut summary = splits;
    summary.insert("best_epoch".into(), json!(pos.best_epoch));
    summary.insert("best_metric".into(), json!({cfg.train.early_stopping_metric.clone(): pos.best_metric}));
    summary.insert("epochs".into(), json!(pos.epoch));
    summary.insert("steps".into(), json!(pos.step));
    summary.insert("wall_seconds".into(), json!(pos.clock.wall_seconds));
    summary.insert("train_seconds".into(), json!(pos.clock.train_seconds));
    summary.insert("train_tokens_per_s".into(), json!(pos.train_tokens as f64 / pos.clock.train_seconds.max(1e-9)));
    summary.insert("seed".into(), json!(cfg.run.seed));
    summary.insert("threads".into(), json!(crate::threads::effective()));
    summary.insert("parameters".into(), json!(count_params(task.varmap())));
    summary.insert("versions".into(), crate::versions());
    summary.insert("git_commit".into(), json!(crate::git_commit()));
    dir.write_summary(&summary)?;
    Ok(summary)
}

/// The task's parameters in name order, each marked for the L2/L1 penalties or not.
pub(crate) fn collect_params(task: &dyn Task) -> Vec<Param> {
    let data = task.varmap().data().lock().expect("varmap lock");
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    names
        .into_iter()
        .map(|name| Param { name: name.clone(), var: data[name].clone(), penalised: task.penalised(name) })
        .collect()
}

fn count_params(varmap: &VarMap) -> usize {
    varmap.all_vars().iter().map(|v| v.elem_count()).sum()
}

/// Model weights, with the task model's config and class names in the metadata, for
/// best/last (`model::checkpoint` format: PyTorch names, same weights ⇒ same bytes).
pub(crate) fn save_weights(path: &Path, task: &dyn Task) -> Result<()> {
    model::checkpoint::save(path, task.varmap(), Some(&task.checkpoint_meta()))
        .with_context(|| format!("writing {}", path.display()))
}

/// The resume state: weights under `model.`, optimizer moments under `optim.`, and the
/// position record as the checkpoint's config. Wall-clock figures live in `clock.json`
/// beside it so that two identical runs write identical resume files.
fn save_resume(dir: &RunDir, varmap: &VarMap, optimizer: &Optimizer, pos: &Position) -> Result<()> {
    let mut tensors: Vec<(String, Tensor)> = model::checkpoint::NamedTensors::named_tensors(varmap)
        .into_iter()
        .map(|(k, v)| (format!("model.{k}"), v))
        .collect();
    for (k, v) in optimizer.state_tensors()? {
        tensors.push((format!("optim.{k}"), v));
    }
    let meta = json!({"position": pos, "optimizer_step": optimizer.step});
    let path = dir.resume_state();
    model::checkpoint::save(&path, &tensors, Some(&meta)).with_context(|| format!("writing {}", path.display()))?;
    atomic::write_json(
        &dir.clock(),
        &json!({"train_seconds": pos.clock.train_seconds, "wall_seconds": pos.clock.wall_seconds, "step": pos.step}),
    )
}

fn load_resume(dir: &RunDir, varmap: &VarMap, optimizer: &mut Optimizer) -> Result<Position> {
    let path = dir.resume_state();
    let ckpt = model::checkpoint::read(&path, &Device::Cpu)?;
    let meta = ckpt.config.as_ref().ok_or_else(|| anyhow!("{}: no position record", path.display()))?;
    let mut pos: Position = serde_json::from_value(meta["position"].clone())
        .with_context(|| format!("{}: position record", path.display()))?;
    let step = meta["optimizer_step"].as_u64().ok_or_else(|| anyhow!("{}: no optimizer_step", path.display()))?;
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
    optimizer.load_state(step, &optim_state)?;
    // The clock file may be one save behind or ahead after a crash; it only feeds throughput.
    if let Ok(text) = std::fs::read_to_string(dir.clock()) {
        if let Ok(v) = serde_json::from_str::<Value>(&text) {
            pos.clock.train_seconds = v["train_seconds"].as_f64().unwrap_or(0.0);
            pos.clock.wall_seconds = v["wall_seconds"].as_f64().unwrap_or(0.0);
        }
    }
    Ok(pos)
}

fn progress_bar(quiet: bool, len: usize, epoch: usize) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if quiet || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg}")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_prefix(epoch.to_string());
    bar
}

/// Evaluation of a finished run from its best checkpoint (`train eval`).
pub fn eval_run(dir: &RunDir, split: &str) -> Result<Map<String, Value>> {
    let split = SplitName::parse(split)?;
    let cfg = crate::config::load_recorded(&dir.root)?;
    let task = task::build(&cfg, dir, true)?;
    model::checkpoint::load_into_varmap(dir.best(), task.varmap())?;
    task.evaluate(split)
}
